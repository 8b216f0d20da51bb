"""Print the commands of the README's "Quick start" code block, one per line."""

import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
match = re.search(r"^#+\s*Quick start\s*\n(.*?)```[a-z]*\n(.*?)```", text, re.S | re.M | re.I)
if not match:
    sys.exit("no Quick start code block in the README")
for line in match.group(2).splitlines():
    if line.strip():
        print(line.strip())
