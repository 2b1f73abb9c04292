"""Statistics and the RESULTS.md text."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from profiling import ProfileSummary

__all__ = ["Measured", "Stat", "Variant", "render"]

BUILD_TARGET_VS_DAGFACTORY = 3.0  # the issue: build at least 3× faster than dag-factory
BUILD_AIM_VS_PLAIN = 1.5  # the issue: aim for within 1.5× of hand-written Python


@dataclass(frozen=True)
class Variant:
    name: str  # key: ours, ours-derive, dagfactory, plain, plain-dfvenv
    label: str
    venv: str  # shown in the table: which interpreter ran it
    optional: bool = False  # a failure is reported as n/a instead of stopping the run


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values))

    def ms(self) -> str:
        return f"{self.median * 1000:,.0f} ms ({self.low * 1000:,.0f}–{self.high * 1000:,.0f})"


@dataclass
class Measured:
    """Every run of one shape: variant → list of child results, or variant → why n/a."""

    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    not_available: dict[str, str] = field(default_factory=dict)

    def stat(self, variant: str, key: str) -> Stat | None:
        runs = self.runs.get(variant)
        return Stat.of([r[key] for r in runs]) if runs else None


def _ratio(a: Stat | None, b: Stat | None) -> float | None:
    return a.median / b.median if a and b else None


def _fmt_ratio(r: float | None) -> str:
    return f"{r:.2f}×" if r is not None else "n/a"


def _shape_section(title: str, variants: list[Variant], m: Measured) -> list[str]:
    out = [f"### {title}", "",
           "| variant | interpreter | build after `import airflow.sdk` | whole process | imports before the build |",
           "|---|---|---:|---:|---:|"]
    for v in variants:
        if v.name in m.not_available:
            out.append(f"| {v.label} | {v.venv} | n/a | n/a | n/a |")
            continue
        build, whole, imports = (m.stat(v.name, k) for k in ("build_s", "whole_s", "import_s"))
        if build and whole and imports:
            out.append(f"| {v.label} | {v.venv} | {build.ms()} | {whole.ms()} | {imports.ms()} |")
    out += ["", "Medians, (min–max) in brackets.", ""]

    out += ["| ratio (medians) | build | whole process | target on build |", "|---|---:|---:|---|"]
    comparisons = [
        ("dag-factory ÷ ours (our speed-up)", "dagfactory", "ours", "≥ 3×", lambda r: r >= BUILD_TARGET_VS_DAGFACTORY),
        ("ours ÷ plain Python (our overhead)", "ours", "plain", "≤ 1.5× (aim)", lambda r: r <= BUILD_AIM_VS_PLAIN),
    ]
    if "ours-derive" in m.runs or "ours-derive" in m.not_available:
        comparisons += [
            ("dag-factory ÷ ours, SQL-derived", "dagfactory", "ours-derive", "≥ 3×",
             lambda r: r >= BUILD_TARGET_VS_DAGFACTORY),
            ("ours, SQL-derived ÷ plain Python", "ours-derive", "plain", "≤ 1.5× (aim)",
             lambda r: r <= BUILD_AIM_VS_PLAIN),
        ]
    for label, num, den, target, met in comparisons:
        build = _ratio(m.stat(num, "build_s"), m.stat(den, "build_s"))
        whole = _ratio(m.stat(num, "whole_s"), m.stat(den, "whole_s"))
        verdict = "n/a" if build is None else ("met" if met(build) else "**not met**")
        out.append(f"| {label} | {_fmt_ratio(build)} | {_fmt_ratio(whole)} | {target}: {verdict} |")
    for name, reason in m.not_available.items():
        out += ["", f"`{name}` n/a: {reason}"]
    return out + [""]


def _profile_section(
    p: ProfileSummary, shape_title: str, build_ms: dict[str, float], plain_profiled_s: float | None
) -> list[str]:
    out = [f"## Where our time goes ({shape_title})", ""]
    phases = {f.key: f for f in p.phases}
    project, build = phases.get("load_project"), phases.get("build_dag")
    if project and build and "ours" in build_ms and "plain" in build_ms:
        factory_s = project.cumulative_s + build.cumulative_s
        top5 = ", ".join(f"`{f.key}`" for f in p.top_ours_cumulative[:5])
        out += [
            f"Without the profiler, our median build was {build_ms['ours']:,.0f} ms against {build_ms['plain']:,.0f} ms "
            f"for the same DAG hand-written in Python: going through YAML costs about "
            f"{build_ms['ours'] - build_ms['plain']:,.0f} ms more. Under cProfile (it inflates Python-heavy code: "
            f"read shares, not seconds) the factory took {factory_s:.2f} s of the {p.total_s:.2f} s build: "
            f"`load_project` (read, validate and plan the YAML; no Airflow) {project.cumulative_s / factory_s:.0%}, "
            f"`build_dag` (the Airflow DAG, operators, Assets and edges) {build.cumulative_s / factory_s:.0%}"
            + (f"; the hand-written file, which builds the same Airflow objects, took {plain_profiled_s:.2f} s under "
               "the same profiler" if plain_profiled_s is not None else "")
            + f". Top 5 of airflow_osds/PyYAML/pydantic by cumulative time: {top5}.",
            "",
        ]
    out += ["| phase (cProfile, cumulative) | seconds | calls |", "|---|---:|---:|"]
    out += [f"| {'&nbsp;&nbsp;&nbsp;&nbsp;' * f.level}{f.label} | {f.cumulative_s:.3f} | {f.calls:,} |"
            for f in p.phases]
    out += ["", "Top functions of airflow_osds / PyYAML / pydantic by cumulative time:", "",
            "| function | cumulative s | own s | calls |", "|---|---:|---:|---:|"]
    out += [f"| `{f.label}` | {f.cumulative_s:.3f} | {f.own_s:.3f} | {f.calls:,} |" for f in p.top_ours_cumulative]
    out += ["", "Top functions of any module by own time (where the CPU actually is):", "",
            "| function | own s | cumulative s | calls |", "|---|---:|---:|---:|"]
    out += [f"| `{f.label}` | {f.own_s:.3f} | {f.cumulative_s:.3f} | {f.calls:,} |" for f in p.top_own]
    return out + [""]


def render(
    *,
    meta: dict[str, str],
    command: str,
    shapes: list[tuple[str, str]],  # (shape name, description)
    variants: list[Variant],
    measured: dict[str, Measured],
    profile: tuple[str, ProfileSummary, float | None] | None,  # shape, ours, plain's profiled total
    notes: list[str],
) -> str:
    out = ["# Parse-time benchmark: airflow-osds vs dag-factory vs hand-written Python", "",
           "Generated by `bench/run.py`; do not edit by hand (re-run the command below). The last section, dbt "
           "rendering vs Cosmos, is only re-measured by `make bench BENCH_ARGS=--dbt` or `make bench-dbt` "
           "(≈ 2–3 min more; it has its own date and command); a plain `make bench` carries it over.", "",
           f"- Command: `{command}`"]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    out += ["", "## Method", ""] + [f"- {n}" for n in notes] + [""]
    out += ["## Results", ""]
    for name, description in shapes:
        out += _shape_section(f"Shape {name}: {description}", variants, measured[name])
    if profile is not None:
        shape_name, summary, plain_profiled_s = profile
        m = measured[shape_name]
        build_ms = {v: s.median * 1000 for v in ("ours", "plain") if (s := m.stat(v, "build_s"))}
        out += _profile_section(summary, f"shape {shape_name}, one cProfile'd build of `ours`", build_ms,
                                plain_profiled_s)
    return "\n".join(out).rstrip() + "\n"
