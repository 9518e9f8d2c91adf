#!/usr/bin/env python3
"""Build the EXTRA music corpus (~25 min, 24 kHz mono 16-bit WAV) from Debian packages that
build_dev.py does not use, for decoders that must generalise to timbres they were not trained on.

Usage: python build_extra.py OUTDIR
Writes OUTDIR/music/*.wav and OUTDIR/manifest.csv (the columns build_dev.py writes).

Why: trial v3d (the inverse-STFT decoder) beat default-v2 on the training corpus's own music
(ViSQOL up to +0.3) and lost to it on held-out music rendered with another soundfont (-0.2 to
-0.4): it had learnt FluidR3's instruments, not music. So this adds other timbres:
  rendered: MMA example MIDIs and odd-indexed MMA grooves through two more General MIDI banks
            (MuseScore_General_Lite, csound's sf_GMbank); build_dev.py renders FluidR3_GM only
  produced: hyperrogue-music, singularity-music, drascula-music (one 15 s window per track)
Never draws on the held-out set's packages (build_heldout.py; ../shared/corpus/README.md's reserved
list: TimGM6mb, planetblupi-music-* -- the ogg package is the reserved MIDIs' own music --, abcmidi,
wesnoth); every glob names its package's own directory.
"""
import csv
import glob
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import audiolib as A  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "corpus_extra"
rng = random.Random(4321)
rows = []
BANKS = {"musescore-general-soundfont-small": "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
         "csound-soundfont": "/usr/share/sounds/sf2/sf_GMbank.sf2"}
PRODUCED = {"hyperrogue-music": "/usr/share/hyperrogue/music/*.ogg",
            "singularity-music": "/usr/share/games/singularity/music/*.ogg",
            "drascula-music": "/usr/share/scummvm/drascula/audio/*.ogg"}


def put(name, x, pkg, kind, note=""):
    if len(x) < A.SR * 3:
        return
    x = A.normalize(A.fade(x))
    path = os.path.join(OUT, "music", name + ".wav")
    sec = A.save(path, x)
    rows.append([os.path.relpath(path, OUT), f"{sec:.2f}", "music", pkg, kind, note])


def log(msg):
    print(msg, flush=True)


mids = sorted(glob.glob("/usr/share/doc/mma/examples/**/*.mid", recursive=True))
grooves = sorted(os.path.splitext(os.path.basename(g))[0] for g in glob.glob("/usr/share/mma/lib/stdlib/*.mma"))
grooves = [g for g in grooves if not g.startswith(("metronome", "none"))][1::2]
PROGS = [["Am", "Dm", "E7", "Am"], ["C", "F", "G", "C"], ["Bb", "Gm", "Eb", "F7"], ["D", "Bm", "G", "A7"]]
for bi, (pkg, bank) in enumerate(BANKS.items()):
    log(f"mma examples and grooves through {os.path.basename(bank)} ...")
    budget = 240 * A.SR
    for m in mids[bi::2]:   # each bank renders its own half of the examples
        try:
            x = A.render_midi(m, bank, max_seconds=20)
        except Exception as e:
            log(f"  skip {m}: {e}")
            continue
        put(f"{pkg.split('-')[0]}_ex_{os.path.splitext(os.path.basename(m))[0]}", x, f"mma+{pkg}",
            "rendered(real samples)", m)
        budget -= len(x)
        if budget <= 0:
            break
    budget = 240 * A.SR
    with tempfile.TemporaryDirectory() as td:
        for gi, g in enumerate(grooves[bi::2]):
            mid = os.path.join(td, g + ".mid")
            if not A.mma_groove(g, mid, rng.randint(70, 160), PROGS[gi % 4] * 3):
                continue
            x = A.render_midi(mid, bank, max_seconds=20)
            put(f"{pkg.split('-')[0]}_groove_{g}", x, f"mma+{pkg}", "rendered(real samples)", g)
            budget -= len(x)
            if budget <= 0:
                break

for pkg, pattern in PRODUCED.items():
    log(f"{pkg} ...")
    tracks = sorted(glob.glob(pattern))
    rng.shuffle(tracks)
    budget = 200 * A.SR
    for t in tracks:
        try:
            x = A.best_window(A.load24(t), 15)
        except Exception as e:
            log(f"  unreadable {t}: {e}")
            continue
        name = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(t))[0]).lower()
        put(f"{pkg.split('-')[0]}_{name}", x, pkg, "produced music")
        budget -= len(x)
        if budget <= 0:
            break

with open(os.path.join(OUT, "manifest.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "seconds", "category", "source_package", "real_or_synthetic", "note"])
    w.writerows(rows)
log(f"DONE {len(rows)} files, {sum(float(r[1]) for r in rows) / 60:.1f} min of music")
