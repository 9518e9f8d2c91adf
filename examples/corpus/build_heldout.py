#!/usr/bin/env python3
"""Build the HELD-OUT evaluation set (~45 clips of 5-10 s, 24 kHz mono 16-bit WAV) from Debian packages.

Usage: python build_heldout.py OUTDIR
Writes OUTDIR/{speech,music,env}/*.wav and OUTDIR/manifest.csv (file, seconds, category, subset,
source_package, note); `subset` splits speech into real-wideband, real-phoneband and synthetic so
results on real wideband human speech can be reported apart (`rvq eval` gives a mean per subset).

Every source package here is reserved for evaluation and never used by build_dev.py, so scores on
this set measure generalisation to unseen speakers, voices, instruments and sound designs:
  speech: real wideband (see REAL_WIDEBAND): fillets-ng-data-cs dialogue (Czech, a female and a male actor,
          22.05 kHz), ktuberling-data words (Ukrainian, Romanian: female; German, Greek, Slovenian: male; 44.1 kHz);
          real phone band: asterisk fr_CA June / it_IT Carlo (G.722, nothing above 7 kHz);
          synthetic: festival ked (en), lp (it), hy_fi_mv (fi) voices
  music : TimGM6mb renders of planetblupi MIDIs and abcmidi examples; wesnoth tracks i%4==3 (every 3rd of those)
  env   : sonic-pi ambience/sfx samples, sound-theme-freedesktop + alsa-utils noise, sound-icons
The alsa-utils and freedesktop channel-name prompts are spoken words, so they are left out of env.
"""
from __future__ import annotations

import csv
import glob
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import audiolib as A  # noqa: E402

MIN_S, MAX_S = 5.0, 10.0
FILLETS = "/usr/share/games/fillets-ng/sound"
KTUBERLING = "/usr/share/ktuberling/sounds"

# Real wideband human speech: (package, language, sex, files, clips). Checked by hand on the
# packages' files: sample rate, energy above 7 kHz (-20..-35 dB of the total, where G.722 has none)
# and median F0 per speaker (female ~235-265 Hz, male ~140-155 Hz). fillets-ng's Czech lines are
# named <level>-m-* (small fish: a female voice) and <level>-v-* (big fish: a male voice).
# Left out: fillets-ng-data-nl (low-passed, < -55 dB above 7 kHz), ktuberling da/ru/en (speakers
# mixed or noisy highs) and its 8 kHz languages (fi, it, pt, sv, nds).
REAL_WIDEBAND = [
    ("fillets-ng-data-cs", "Czech", "female", f"{FILLETS}/*/cs/*-m-*.ogg", 3),
    ("fillets-ng-data-cs", "Czech", "male", f"{FILLETS}/*/cs/*-v-*.ogg", 3),
    ("ktuberling-data", "Ukrainian", "female", f"{KTUBERLING}/uk/*.*", 3),
    ("ktuberling-data", "Romanian", "female", f"{KTUBERLING}/ro/*.*", 1),
    ("ktuberling-data", "German", "male", f"{KTUBERLING}/de/*.*", 2),
    ("ktuberling-data", "Greek", "male", f"{KTUBERLING}/el/*.*", 2),
    ("ktuberling-data", "Slovenian", "male", f"{KTUBERLING}/sl/*.*", 2),
]
SF2 = "/usr/share/sounds/sf2/TimGM6mb.sf2"

# New sentences (not in texts.DEV_SENTENCES nor in the licence texts used for training).
HELDOUT_TEXTS = {
    ("ked_diphone", "festvox-kdlpc16k"): [
        "The old lighthouse keeper climbed the stairs every evening. He polished the lamp until it shone.",
        "Our neighbours planted tomatoes, beans and sunflowers along the fence. By August the garden was full.",
    ],
    ("lp_diphone", "festvox-italp16k"): [
        "Il treno per Firenze parte dal binario tre alle otto e mezza. Ricordati di comprare il biglietto.",
        "Mia nonna prepara la pasta fresca ogni domenica mattina. Tutta la famiglia viene a pranzo da lei.",
    ],
    ("hy_fi_mv_diphone", "festvox-suopuhe-mv"): [
        "Kirjasto on auki arkisin kello yhdeksästä kahdeksaan. Lauantaisin se suljetaan jo neljältä.",
        "Syksyllä metsässä kasvaa paljon sieniä ja puolukoita. Keräämme niitä koko perheen voimin.",
    ],
}


class Writer:
    """Normalises, saves and records clips; enforces the 5-10 s length so every clip is comparable."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.rows: list[list[str]] = []

    def put(self, cat: str, name: str, x: np.ndarray, pkg: str, note: str, subset: str = "") -> None:
        x = x[: int(MAX_S * A.SR)]
        if len(x) < MIN_S * A.SR:
            print(f"  skip {cat}/{name}: {len(x) / A.SR:.1f} s < {MIN_S} s", flush=True)
            return
        path = os.path.join(self.out, cat, name + ".wav")
        sec = A.save(path, A.normalize(A.fade(x)))
        self.rows.append([os.path.relpath(path, self.out), f"{sec:.2f}", cat, subset, pkg, note])

    def write_manifest(self) -> None:
        """The training manifest's columns, with `subset` (speech only) in place of real_or_synthetic."""
        with open(os.path.join(self.out, "manifest.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "seconds", "category", "subset", "source_package", "note"])
            w.writerows(self.rows)


def chunks(parts: list[np.ndarray], target_s: float = 8.0, gap: float = 0.3) -> list[np.ndarray]:
    """Concatenate short sounds into ~target_s clips; a short remainder is dropped later by Writer."""
    out, cur, n = [], [], 0.0
    for p in parts:
        cur.append(p)
        n += len(p) / A.SR + gap
        if n >= target_s:
            out.append(A.concat(cur, gap))
            cur, n = [], 0.0
    if cur:
        out.append(A.concat(cur, gap))
    return out


def real_wideband(w: Writer, rng: random.Random) -> None:
    """Short lines or words of one speaker, silence trimmed, joined into ~8 s clips."""
    for pkg, language, sex, pattern, n_clips in REAL_WIDEBAND:
        files = sorted(glob.glob(pattern))
        rng.shuffle(files)
        parts = [x for x in (A.trim_silence(A.load24(f), -45) for f in files[:80]) if 0.3 * A.SR < len(x) < 6 * A.SR]
        tag = f"{language.lower()}_{sex}"
        for i, x in enumerate(chunks(parts)[:n_clips]):
            w.put("speech", f"wideband_{tag}_{i}", x, pkg, f"real wideband, {language}, {sex} speaker", "real-wideband")


def speech(w: Writer, rng: random.Random) -> None:
    """Real phone prompts (3 clips per speaker) and synthetic festival sentences (2 per voice)."""
    for d, pkg in [("fr_CA_f_June", "asterisk-core-sounds-fr-g722"), ("it_IT_m_Carlo", "asterisk-core-sounds-it-g722")]:
        files = sorted(f for f in glob.glob(f"/usr/share/asterisk/sounds/{d}/**/*.g722", recursive=True)
                       if "/silence/" not in f)
        rng.shuffle(files)
        parts = []
        for f in files[:60]:
            x = A.trim_silence(A.load24(f), -45)
            if 0.8 * A.SR < len(x) < 6 * A.SR:
                parts.append(x)
        for i, x in enumerate(chunks(parts)[:3]):
            w.put("speech", f"asterisk_{d}_{i}", x, pkg, f"real (G.722 16 kHz source) {d}", "real-phoneband")
    for (voice, pkg), texts in HELDOUT_TEXTS.items():
        for i, text in enumerate(texts):
            w.put("speech", f"festival_{voice}_{i}", A.festival(text, voice), pkg, f"synthetic festival {voice}",
                  "synthetic")


def n_tunes(abc: str) -> int:
    """abc2midi -o writes only the first tune, so multi-tune example files are skipped."""
    with open(abc, encoding="latin-1") as f:
        return sum(line.startswith("X:") for line in f)


def music(w: Writer) -> None:
    """MIDI renders with the held-out TimGM6mb soundfont, plus every third held-out wesnoth track."""
    for m in sorted(glob.glob("/usr/share/planetblupi/music/*.mid"))[::3]:
        x = A.best_window(A.render_midi(m, SF2, max_seconds=60), MAX_S)
        w.put("music", "blupi_" + os.path.basename(m)[:-4], x, "planetblupi-music-midi+timgm6mb-soundfont", m)
    single = [f for f in sorted(glob.glob("/usr/share/doc/abcmidi/examples/*.abc")) if n_tunes(f) == 1]
    with tempfile.TemporaryDirectory() as td:
        for abc in single[::2]:
            mid = os.path.join(td, os.path.basename(abc)[:-4] + ".mid")
            A.run(["abc2midi", abc, "-o", mid])
            x = A.best_window(A.render_midi(mid, SF2, max_seconds=60), MAX_S)
            w.put("music", "abc_" + os.path.basename(abc)[:-4], x, "abcmidi+timgm6mb-soundfont", abc)
    tracks = sorted(glob.glob("/usr/share/games/wesnoth/1.16/data/core/music/*.ogg"))
    reserved = [t for i, t in enumerate(tracks) if i % 4 == 3]
    for t in reserved[::3]:
        w.put("music", "wesnoth_" + os.path.basename(t)[:-4], A.best_window(A.load24(t), MAX_S),
              "wesnoth-1.16-music", "produced music, index % 4 == 3")


def trimmed(files: list[str]) -> list[np.ndarray]:
    """Load and trim silence so concatenated sound effects are not mostly gaps."""
    return [A.trim_silence(A.load24(f), -50) for f in files]


def env(w: Writer) -> None:
    """Long sonic-pi ambiences as single clips; short effects/system sounds concatenated into clips."""
    sp = sorted(f for pre in ("ambi", "misc", "perc", "vinyl")
                for f in glob.glob(f"/usr/share/sonic-pi/samples/{pre}_*.flac"))
    loaded = dict(zip(sp, trimmed(sp)))
    long_ = {f: x for f, x in loaded.items() if len(x) >= MIN_S * A.SR}
    for f, x in long_.items():
        w.put("env", "sonicpi_" + os.path.basename(f)[:-5], x, "sonic-pi-samples", "single sample")
    short = [x for f, x in loaded.items() if f not in long_]
    w.put("env", "sonicpi_sfx", chunks(short)[0], "sonic-pi-samples", "concatenated short ambi/misc/perc/vinyl samples")
    fd = sorted(f for f in glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga")
                if not os.path.basename(f).startswith(("audio-channel-", "audio-test-signal")))
    parts = trimmed(["/usr/share/sounds/alsa/Noise.wav"] + fd)
    for i, x in enumerate(chunks(parts)[:2]):
        note = "alsa Noise.wav + freedesktop alerts" if i == 0 else "freedesktop alerts"
        w.put("env", f"system_{i}", x, "alsa-utils+sound-theme-freedesktop" if i == 0 else "sound-theme-freedesktop",
              note + ", concatenated")
    icons = sorted(glob.glob("/usr/share/sounds/sound-icons/*.wav"))
    w.put("env", "soundicons", chunks(trimmed(icons))[0], "sound-icons", "concatenated sound icons")


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "heldout"
    w = Writer(out)
    print("speech ...", flush=True)
    speech(w, random.Random(4321))
    real_wideband(w, random.Random(97))  # its own generator: the clips above stay as they were
    print("music ...", flush=True)
    music(w)
    print("env ...", flush=True)
    env(w)
    w.write_manifest()
    counts = {c: sum(r[2] == c for r in w.rows) for c in ("speech", "music", "env")}
    counts["real-wideband"] = sum(r[3] == "real-wideband" for r in w.rows)
    print(f"DONE {len(w.rows)} clips {counts}, {sum(float(r[1]) for r in w.rows) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
