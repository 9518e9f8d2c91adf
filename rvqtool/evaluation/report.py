"""Evaluation results: per-file rows, their means per (system, bitrate, category), the terminal
table, and the JSON / CSV files `--out` writes."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path

LABELS = {"si_sdr": "SI-SDR", "mel": "mel", "stft": "STFT", "pesq": "PESQ", "stoi": "STOI", "visqol": "ViSQOL"}
ALL_CATEGORIES = "all"


def _mean(values: list) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def _visqol_modes(members: list[dict]) -> str:
    """The ViSQOL mode of a mean: one mode, or e.g. "audio+speech" where the files were scored in both."""
    return "+".join(sorted({r["visqol_mode"] for r in members if "visqol_mode" in r})) or "-"


def summarize(rows: list[dict], metrics: tuple[str, ...]) -> list[dict]:
    """Means per (system, requested kbps, category), per (category, subset) where files have a
    subset, then per (system, kbps) over every file.

    Bitrates and speeds pool the files (total bytes or time over total seconds), so long files
    weigh more there; quality metrics are plain means over files, as in the papers."""
    out = []
    systems = list(dict.fromkeys((r["system"], r["kbps"]) for r in rows))
    categories = sorted({r["category"] for r in rows})
    subsets = sorted({(r["category"], r["subset"]) for r in rows if r.get("subset")})
    for system, kbps in systems:
        group = [r for r in rows if (r["system"], r["kbps"]) == (system, kbps)]
        splits = [(c, None, [r for r in group if r["category"] == c]) for c in categories] if len(categories) > 1 else []
        splits += [(c, s, [r for r in group if (r["category"], r.get("subset")) == (c, s)]) for c, s in subsets]
        for category, subset, members in splits + [(ALL_CATEGORIES, None, group)]:
            if not members:
                continue
            seconds = sum(r["seconds"] for r in members)
            entry = {"system": system, "kbps": kbps, "category": category, "n": len(members), "seconds": seconds,
                     "kbps_measured": sum(r["payload_bytes"] for r in members) * 8 / seconds / 1000,
                     "n_q": members[0]["n_q"]}
            if subset is not None:
                entry["subset"] = subset
            entry.update({m: _mean([r.get(m) for r in members]) for m in metrics})
            if "visqol" in metrics:
                entry["visqol_mode"] = _visqol_modes(members)
            for what in ("encode", "decode"):
                spent = [r.get(f"{what}_seconds") for r in members]
                entry[f"{what}_xrt"] = seconds / sum(spent) if None not in spent and sum(spent) > 0 else None
            out.append(entry)
    return out


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def group_name(row: dict) -> str:
    """A mean's group as shown: its category, or category/subset (e.g. speech/real-wideband)."""
    return f"{row['category']}/{row['subset']}" if row.get("subset") else str(row["category"])


def table(rows: list[dict], metrics: tuple[str, ...], first: str) -> str:
    """Fixed-width text table; `first` names the first column ("file" or "category"); with ViSQOL,
    a column after it names the mode it was scored in."""
    digits = {"si_sdr": 2, "mel": 3, "stft": 3, "pesq": 2, "stoi": 3, "visqol": 2}
    columns = [(LABELS[m], lambda r, m=m: _fmt(r.get(m), digits[m])) for m in metrics]
    if "visqol" in metrics:
        at = metrics.index("visqol") + 1
        columns.insert(at, ("ViSQOL mode", lambda r: r.get("visqol_mode") or "-"))
    header = ["system", "kbps", first] + [label for label, _ in columns] + ["enc xRT", "dec xRT"]
    lines = [header]
    for r in rows:
        lines.append([r["system"], _fmt(r["kbps_measured"], 2), group_name(r) if first == "category" else str(r[first])]
                     + [cell(r) for _, cell in columns]
                     + [_fmt(r.get("encode_xrt"), 1), _fmt(r.get("decode_xrt"), 1)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 2}
    return "\n".join("  ".join(cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def usage_lines(usage: dict[str, list[dict]]) -> str:
    out = []
    for system, levels in usage.items():
        cells = ", ".join(f"L{u['level']} {u['perplexity']:.0f} ({100 * u['share_used']:.0f}% used)" for u in levels)
        out.append(f"code usage, {system}: perplexity per level: {cells}")
    return "\n".join(out)


def write(path: Path, result: dict) -> None:
    """`result` as JSON (everything) or CSV (per-file rows, then the means with file = '(mean)')."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(result, indent=1, allow_nan=False, default=_json_default) + "\n"
    elif path.suffix.lower() == ".csv":
        text = _csv(result)
    else:
        raise UserError(f"{path}: --out takes a .json or .csv file")
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")


def _json_default(value):
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _csv(result: dict) -> str:
    rows = [dict(r) for r in result["files"]] + [{**m, "file": "(mean)"} for m in result["means"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()
