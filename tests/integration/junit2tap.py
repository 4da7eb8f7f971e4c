"""Turn a pytest JUnit XML report into TAP for automake's tap-driver."""
import sys
import xml.etree.ElementTree as ET


def main(path, status):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        print("Bail out! pytest produced no report (exit status %s)" % status)
        return
    cases = list(root.iter("testcase"))
    if not cases:
        print("Bail out! pytest ran no test (exit status %s)" % status)
        return
    print("1..%d" % len(cases))
    for n, case in enumerate(cases, 1):
        name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped")
        if skipped is not None:
            print("ok %d - %s # SKIP %s" % (n, name, skipped.get("message", "")[:200]))
        elif failed:
            print("not ok %d - %s" % (n, name))
        else:
            print("ok %d - %s" % (n, name))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "?")
