"""How the CLI shows results as text (--json prints them as they are)."""

from __future__ import annotations

import json
import os
from typing import Any


def fragment_text(f: Any) -> str:
    meta = json.dumps(f.metadata, ensure_ascii=False) if f.metadata else "{}"
    return (
        f"id:        {f.id}\nnamespace: {f.namespace}\nversion:   {f.version}\n"
        f"status:    {status_text(f)}\nmetadata:  {meta}\n\n{body_text(f)}"
    )


def status_text(f: Any) -> str:
    if f.status == "approximate":
        recall = (
            f" · share of words unknown ({f.expected_recall_unknown or 'not calibrated'})"
            if f.expected_recall is None
            else f" · ~{f.expected_recall:.0%} of words expected"
            + (
                f" (as measured on the {f.expected_recall_source}, not on this namespace)"
                if f.expected_recall_source not in (None, "namespace")
                else ""
            )
        )
        return (
            f"≈ approximate · fidelity {f.fidelity:.2f}{recall} "
            "(a reconstruction, not the original)"
        )
    if f.status == "lost":
        return "lost · nothing is left to rebuild its text from"
    return f.status


def body_text(f: Any) -> str:
    if f.text is None:
        return "(text lost)"
    return f"≈ {f.text}" if f.status == "approximate" else f.text


def hits_table(hits: list[Any]) -> str:
    if not hits:
        return "no results"
    width = max(20, min(100, terminal_width() - 40))
    lines = [f"{'score':>6}  {'id':<12}  {'namespace':<10}  text"]
    for h in hits:
        text = shorten(body_text(h), width)
        lines.append(f"{h.score:6.3f}  {h.id[:12]:<12}  {h.namespace[:10]:<10}  {text}")
    return "\n".join(lines)


def terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def log_line(report: dict[str, Any]) -> str:
    checked = report.get("checked", {})
    if "log_events" not in checked:
        return ""
    how = "all of it" if checked["log_deep"] else "new events and a rolling slice"
    line = f"log checksums: {checked['log_events']} positions read ({how})"
    if checked.get("cache_folders_read_ahead"):  # the scan found the cache on the disk
        line += f"; cache read ahead: {checked['cache_folders_read_ahead']} folders"
    if "files_whole" in checked:
        line += "; ledger: " + ("every page and index" if checked["files_whole"] else "every page")
    return line


def cycle_text(report: dict[str, Any]) -> str:
    calibration = "".join(
        f"calibration {ns}: {calibration_text(c)}\n"
        for ns, c in report.get("calibration", {}).items()
    )
    return (
        f"dream cycle {report['id']} ({report['trigger']})\n"
        + counts_line("found", report["found"])
        + "\n"
        + counts_line("repaired", report["repaired"])
        + "\n"
        + calibration
        + (log_line(report) + "\n" if "checked" in report else "")
        + f"health {report['health_before']:.1%} -> {report['health_after']:.1%} "
        f"in {report['seconds']['total']:.2f} s"
    )


def counts_line(label: str, counts: dict[str, int]) -> str:
    if not counts:
        return f"{label}: nothing"
    return f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def health_table(h: dict[str, Any]) -> str:
    rows = [
        ("health", f"{h['score']:.1%}  of {h['live']} live fragment(s)"),
        ("servable", f"{h['servable']:.1%}  (a body can be read, exact or approximate)"),
    ]
    rows += [(f"  {status}", str(n)) for status, n in h["by_status"].items()]
    rows += [
        ("open findings", inline(h["by_fault"]) or "none"),
        ("repairs", inline(h["by_method"]) or "none"),
    ]
    if h["fidelity"]["mean"] is not None:
        rows.append(
            ("fidelity", f"mean {h['fidelity']['mean']:.3f}, min {h['fidelity']['min']:.3f}")
        )
        expected = h["expected_recall"]
        rows.append(
            (
                "expected recall",
                (
                    "unknown"
                    if expected["mean"] is None
                    else f"mean ~{expected['mean']:.0%} of the original's words"
                )
                + (
                    f" ({expected['not_calibrated']} not calibrated)"
                    if expected["not_calibrated"]
                    else ""
                ),
            )
        )
    for namespace, methods in h["calibration"].items():
        for method, c in methods.items():
            rows.append((f"  {namespace}", f"{method}: {calibration_text(c)}"))
    rows.append(("lag", inline(h["lag"])))
    for name, error in h.get("projection_errors", {}).items():
        # Said loudly: writes are still acknowledged (the log has them) and reads fall back
        # to the log, so nothing else would tell that a copy has stopped following it.
        rows.append(
            (
                "BEHIND",
                f"{name} stopped following the log: {error} (it retries on "
                "every read; reads are served from the log meanwhile)",
            )
        )
    cycle = h["last_cycle"]
    rows.append(
        (
            "last cycle",
            "never"
            if not cycle
            else f"{cycle['completed_at'][:19]} {cycle['trigger']}: "
            f"{cycle['health_before']:.1%} -> {cycle['health_after']:.1%}",
        )
    )
    return "\n".join(f"{k:<14} {v}" for k, v in rows)


def calibration_text(c: dict[str, Any]) -> str:
    status = c["status"]
    source = c.get("source", "namespace")
    if status in ("calibrated", "current", "adopted") and source != "namespace":
        # Measured elsewhere, on public text, and adopted until the namespace has its own.
        return (
            f"{'adopted' if status == 'adopted' else 'reads'} the calibration measured on the "
            f"{source} ({c['fragments']} fragments there: mean fidelity "
            f"{c['mean_fidelity']:.2f}, ~{c['mean_recall']:.0%} of words recovered), "
            "until its own is measured"
        )
    if status in ("calibrated", "current") and "mean_recall" in c:
        return (
            f"{status} on {c['fragments']} of {c['exact_fragments']} exact fragments: "
            f"mean fidelity {c['mean_fidelity']:.2f}, ~{c['mean_recall']:.0%} of words "
            f"({c['mean_content_recall']:.0%} of content words) recovered"
        )
    if status in ("too-small", "declined"):
        small = c.get("too_small", c)
        return (
            f"too small to calibrate ({small['exact_fragments']} exact fragments; "
            f"{small['needed']} needed)"
        )
    if status == "calibrating":
        progress = c.get("progress", c)
        return f"calibrating ({progress.get('measured', 0)} of {progress.get('of', '?')})"
    return status


def inline(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def recovery_text(r: dict[str, Any]) -> str:
    lines = [
        f"the log was {r['fault']}: recovered {r['recovered']} fragment(s) into a new log "
        f"({r['verified']} checked against the ledger, {r['unverified']} against their file "
        f"only; vectors: {r['vector_from_index']} from the index, {r['vector_from_model']} "
        f"embedded again); {r['live']} live",
        "kept aside: " + (", ".join(r["kept"]) or "nothing (the log file was gone)"),
    ]
    for key, why in r["unrecovered"].items():
        lines.append(f"NOT RECOVERED {key}: {why}")
    return "\n".join(lines)
