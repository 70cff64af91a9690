"""Copy the import tail's ASL into infra/template.yaml, or check the copy is current.

The ASL file (infra/import_tail.asl.json) is the source: statelint checks it and
the tests execute it. CloudFormation cannot read a local file at deploy time
(DefinitionS3Location needs an upload first), so the template carries the same
definition inline, as JSON (which is YAML), between two marker comments, with
``${...}`` definition substitutions the template fills in.

    python infra/sync_definition.py           # rewrite the block in template.yaml
    python infra/sync_definition.py --check   # exit 1 if the template is out of date
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASL = HERE / "import_tail.asl.json"
TEMPLATE = HERE / "template.yaml"
BLOCK = re.compile(
    r"(?P<indent>[ ]*)# BEGIN Definition[^\n]*\n(?P<body>.*?)(?P=indent)# END Definition",
    re.DOTALL,
)


def render_block(asl: dict, indent: str) -> str:
    body = json.dumps(asl, indent=2, ensure_ascii=False)
    lines = body.splitlines()
    inner = "\n".join(indent + "  " + line for line in lines[1:-1])
    return f"{indent}Definition: {{\n{inner}\n{indent}}}\n"


def synced(template_text: str, asl: dict) -> str:
    m = BLOCK.search(template_text)
    if not m:
        raise SystemExit(f"{TEMPLATE}: no '# BEGIN Definition' ... '# END Definition' block")
    indent = m.group("indent")
    start, end = m.span("body")
    return template_text[:start] + render_block(asl, indent) + template_text[end:]


def main(argv: list[str]) -> int:
    asl = json.loads(ASL.read_text())
    current = TEMPLATE.read_text()
    wanted = synced(current, asl)
    if "--check" in argv:
        if current != wanted:
            print(f"{TEMPLATE} is out of date with {ASL.name}: run `python infra/sync_definition.py`")
            return 1
        return 0
    if current != wanted:
        TEMPLATE.write_text(wanted)
        print(f"updated the Definition in {TEMPLATE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
