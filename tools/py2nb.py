"""Author a notebook from a percent-format text file: cells start at "# %%" or "# %% [markdown]" (optional tags=[a,b]).

Usage: python tools/py2nb.py SOURCE.py DEST.ipynb   (then `nbdev_clean` for curriculum/). The .ipynb is the source of truth;
this only saves typing JSON by hand when a notebook is first written.
"""
import re
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

src, dst = sys.argv[1], sys.argv[2]
text = open(src).read()
cells = []
for block in re.split(r"^# %%", text, flags=re.M)[1:]:
    header, _, body = block.partition("\n")
    body = body.strip("\n")
    tags = re.findall(r"tags=\[([^\]]*)\]", header)
    tags = [t.strip().strip("'\"") for t in tags[0].split(",")] if tags else []
    if "[markdown]" in header:
        c = new_markdown_cell("\n".join(re.sub(r"^# ?", "", line) for line in body.split("\n")))
    else:
        c = new_code_cell(body)
    if tags:
        c.metadata["tags"] = tags
    cells.append(c)
kernelspec = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
nb = new_notebook(cells=cells, metadata={"kernelspec": kernelspec, "language_info": {"name": "python"}})
nbformat.write(nb, dst)
