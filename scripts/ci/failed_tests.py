"""Print the failed tests of a pytest JUnit XML report, one short block each.

CI shows only the last lines of a run, so `make molecule` calls this after a failed scenario:
the names and first message lines of what failed are then the last thing printed.
"""

import sys
import xml.etree.ElementTree as ET

MESSAGE_LINES = 3


def failures(report: str) -> list[str]:
    lines = []
    for case in ET.parse(report).iter("testcase"):
        for problem in case:
            if problem.tag not in ("failure", "error"):
                continue
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            lines.append(f"{problem.tag.upper()} {name} ({case.get('time', '?')} s)")
            message = [m for m in (problem.get("message") or "").splitlines() if m.strip()][:1]
            # The end of the traceback holds pytest's explanation of the assert and its line.
            trace = [t for t in (problem.text or "").splitlines() if t.strip()]
            shown = message + trace[len(message) - MESSAGE_LINES :]
            lines.extend(f"    {line.strip()[:160]}" for line in shown)
    return lines


def main(reports: list[str]) -> int:
    for report in reports:
        try:
            lines = failures(report)
        except (OSError, ET.ParseError) as error:
            print(f"{report}: no test report ({error})")
            continue
        print(f"{report}: {sum(1 for line in lines if not line.startswith(' '))} failed")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
