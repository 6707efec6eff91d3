"""Run pulpcore's own content-app functional tests against the local Pulp, twice: with
nginx serving our app, then pulpcore-content (the baseline), and write a report.

    python -m conformance.run [--slice ci] [--only asgi|legacy] [--report PATH]

The tests come from the installed pulpcore, pulp_file and pulp_certguard packages and
their pytest plugins; they reach Pulp the way Pulp's CI does (the API through nginx,
content at ``CONTENT_ORIGIN``). Each run is a pytest process with a JUnit XML file; the
report puts the two outcomes side by side with the failure or skip reason.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from conformance import stack as stacks

PULPCORE = "pulpcore.tests.functional.api"
PULP_FILE = "pulp_file.tests.functional.api"
CERTGUARD = "pulp_certguard.tests.functional.api"

#: Every functional test module that exercises the content app (reference §5.2).
FULL = [
    f"{PULPCORE}.using_plugin.test_content_access",
    f"{PULPCORE}.using_plugin.test_content_cache",
    f"{PULPCORE}.using_plugin.test_content_delivery",
    f"{PULPCORE}.using_plugin.test_content_directory",
    f"{PULPCORE}.using_plugin.test_content_path",
    f"{PULPCORE}.using_plugin.test_content_promotion",
    f"{PULPCORE}.using_plugin.test_checkpoint",
    f"{PULPCORE}.using_plugin.test_contentguard",
    f"{PULPCORE}.using_plugin.test_distributions",
    f"{PULPCORE}.using_plugin.test_proxy",
    f"{PULPCORE}.using_plugin.test_reclaim_disk_space",
    f"{PULPCORE}.using_plugin.test_repo_versions",
    f"{PULPCORE}.test_artifact_distribution",
    f"{PULP_FILE}.test_download_policies",
    f"{PULP_FILE}.test_mime_types",
    f"{PULP_FILE}.test_distributed_publication",
    f"{PULP_FILE}.test_acs",
    f"{PULP_FILE}.test_auto_publish",
    f"{CERTGUARD}.test_x509_certguard",
    f"{CERTGUARD}.test_rhsm_certguard",
]
#: With DOMAIN_ENABLED the API lives under /pulp/<domain>/api/v3/, and the client
#: bindings on PyPI are generated without domains: Pulp's CI regenerates them from the
#: live schema (openapi-generator). Until we do too, the domains stack is checked by the
#: parity corpus (``make parity-domains``) and by our own tests, not by these modules.
DOMAINS: list[str] = [f"{PULP_FILE}.test_domains"]
#: A few minutes for CI: listings, paths, guards, ranges, policies, checkpoints. Not the
#: cache workflow: its on-demand step races a client that leaves after the headers
#: (pulpcore-content fails it every time, we pass it most times), so it stays in FULL.
CI = [
    f"{PULPCORE}.using_plugin.test_content_path",
    f"{PULPCORE}.using_plugin.test_checkpoint",
    f"{PULPCORE}.using_plugin.test_content_directory",
    f"{PULP_FILE}.test_download_policies",
    f"{PULP_FILE}.test_mime_types",
    f"{CERTGUARD}.test_x509_certguard",
]

#: Outcomes explained in advance: ASGI responses have no reason phrase (the text is in
#: the body instead, docs/differences.md), and tests that need the internet.
KNOWN = {
    "test_content_directory_listing": "asserts a custom HTTP reason phrase "
                                      "(\"Distribution is not pointing to…\"); ASGI has none, "
                                      "the same text is in our body",
    "test_composite_contentguard_permissions": "asserts guard hrefs in the HTTP reason "
                                               "phrase; ASGI has none, the text is in our "
                                               "body",
}


@dataclass
class Outcome:
    status: str  # passed, failed, skipped, error
    message: str = ""


def run_suite(stack: stacks.Layout, modules: list[str], xml: str, workers: int) -> None:
    env = {**stacks.environment(stack), "API_PROTOCOL": "http", "API_HOST": "127.0.0.1",
           "API_PORT": str(stack.nginx), "ADMIN_USERNAME": stacks.ADMIN[0],
           "ADMIN_PASSWORD": stacks.ADMIN[1],
           # Some tests run pulpcore-manager and curl by name.
           "PATH": f"{stacks.BIN}:{os.environ.get('PATH', '')}"}
    import pulpcore

    # Rooted at site-packages, test ids (and JUnit class names) are the module paths.
    site = os.path.dirname(os.path.dirname(pulpcore.__file__))
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
            "--timeout", "600", f"--rootdir={site}", "--pyargs", *modules]
    # As Pulp's CI: tests marked parallel in parallel, then the others one by one.
    for marker, suffix, extra in (("parallel", "parallel", ["-n", str(workers)]),
                                  ("not parallel", "serial", [])):
        subprocess.run([*base, "-m", marker, *extra, f"--junitxml={xml}.{suffix}.xml"],
                       env=env, cwd="/tmp", check=False)


def outcomes(xml_prefix: str) -> dict[str, Outcome]:
    found: dict[str, Outcome] = {}
    for suffix in ("parallel", "serial"):
        path = f"{xml_prefix}.{suffix}.xml"
        if not os.path.exists(path):
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            test_id = f"{case.get('classname')}::{case.get('name')}"
            outcome = Outcome("passed")
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    text = (child.get("message") or child.text or "").strip().splitlines()
                    status = {"failure": "failed", "skipped": "skipped"}.get(child.tag, "error")
                    outcome = Outcome(status, text[0][:160] if text else "")
                    break
            found[test_id] = outcome
    return found


def _cell(outcome: Outcome | None) -> str:
    if outcome is None:
        return "-"
    mark = {"passed": "pass", "failed": "**FAIL**", "error": "**ERROR**",
            "skipped": "skip"}[outcome.status]
    return mark


def _reason(name: str, ours: Outcome | None, legacy: Outcome | None) -> str:
    test = name.split("::")[-1].split("[")[0]
    if test in KNOWN and ours is not None and ours.status == "failed":
        return f"known: {KNOWN[test]}"
    for outcome in (ours, legacy):
        if outcome is not None and outcome.status != "passed" and outcome.message:
            return outcome.message.replace("|", "\\|")
    return ""


def report(path: str, columns: dict[str, dict[str, dict[str, Outcome]]]) -> None:
    """``columns``: variant -> {"asgi": outcomes, "legacy": outcomes}."""
    lines = [
        "# Conformance: pulpcore's content-app functional tests", "",
        f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
        "`make conformance` (`conformance/run.py`) against the local Pulp of "
        "`make pulp-up` (pulpcore " + _version("pulpcore") + ", nginx in front, "
        f"`CONTENT_PATH_PREFIX={stacks.PREFIX}`, cache on). **asgi** is this project; "
        "**legacy** is pulpcore-content behind the same nginx, the same database and "
        "the same settings (the baseline). None of these tests needs the internet.", "",
    ]
    for variant, runs in columns.items():
        ours, legacy = runs.get("asgi", {}), runs.get("legacy", {})
        names = sorted(set(ours) | set(legacy))
        tally = {side: {s: sum(1 for o in outs.values() if o.status == s)
                        for s in ("passed", "failed", "error", "skipped")}
                 for side, outs in (("asgi", ours), ("legacy", legacy))}
        lines += [f"## {variant}", ""]
        for side in ("asgi", "legacy"):
            t = tally[side]
            lines.append(f"* **{side}**: {t['passed']} passed, {t['failed']} failed, "
                         f"{t['error']} errors, {t['skipped']} skipped")
        lines += ["", "| Test | asgi | legacy | Reason / note |", "|---|---|---|---|"]
        for name in names:
            short = name.replace("pulpcore.tests.functional.api.", "pulpcore ").replace(
                "pulp_file.tests.functional.api.", "pulp_file ").replace(
                "pulp_certguard.tests.functional.api.", "certguard ")
            lines.append(f"| `{short}` | {_cell(ours.get(name))} | "
                         f"{_cell(legacy.get(name))} | "
                         f"{_reason(name, ours.get(name), legacy.get(name))} |")
        lines.append("")
    with open(path, "w") as out:
        out.write("\n".join(lines))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slice", choices=("full", "ci"), default="full")
    parser.add_argument("--only", choices=("asgi", "legacy"), default=None)
    parser.add_argument("--report", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the JUnit files of earlier runs "
                             "(e.g. after re-running one side with --only)")
    parser.add_argument("--domains", action="store_true",
                        help="also run DOMAINS on a DOMAIN_ENABLED stack (needs bindings "
                             "generated for domains)")
    args = parser.parse_args()
    sides = [args.only] if args.only else ["asgi", "legacy"]
    variants = [("no domains", False, FULL if args.slice == "full" else CI)]
    if args.slice == "full" and args.domains:
        variants.append(("domains", True, DOMAINS))
    out_dir = os.path.join(stacks.ROOT, ".dev", "conformance")
    os.makedirs(out_dir, exist_ok=True)
    columns: dict[str, dict[str, dict[str, Outcome]]] = {}
    failed_ours = 0
    for variant, domains, modules in variants:
        if args.report_only:
            for side in ("asgi", "legacy"):
                xml = os.path.join(out_dir, f"{'domains' if domains else 'plain'}-{side}")
                columns.setdefault(variant, {})[side] = outcomes(xml)
        else:
            stack = stacks.layout(domains)
            stacks.up(stack, sides[0], fresh=True)
            try:
                for side in sides:
                    stacks.switch(stack, side)
                    xml = os.path.join(out_dir,
                                       f"{'domains' if domains else 'plain'}-{side}")
                    for stale in (f"{xml}.parallel.xml", f"{xml}.serial.xml"):
                        if os.path.exists(stale):
                            os.unlink(stale)
                    run_suite(stack, modules, xml, args.workers)
                    columns.setdefault(variant, {})[side] = outcomes(xml)
            finally:
                stacks.down(stack)
        ours = columns[variant].get("asgi", {})
        failed_ours += sum(1 for name, o in ours.items() if o.status in ("failed", "error")
                           and name.split("::")[-1].split("[")[0] not in KNOWN)
    default = ("conformance/report.md" if args.slice == "full"
               else os.path.join(out_dir, "report-ci.md"))
    path = args.report or os.path.join(stacks.ROOT, default)
    report(path, columns)
    print(f"Report: {path}; unexpected failures of our app: {failed_ours}")
    sys.exit(1 if failed_ours and "asgi" in sides else 0)


if __name__ == "__main__":
    main()
