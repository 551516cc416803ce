#!/usr/bin/python3
"""mkpdf.py - write a minimal one-page PDF whose text is argv[2] (ASCII)."""
import sys

text = sys.argv[2].replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
stream = "BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text
objs = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
    "/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
    "<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
]
out = "%PDF-1.4\n"
offs = []
for i, o in enumerate(objs):
    offs.append(len(out))
    out += "%d 0 obj\n%s\nendobj\n" % (i + 1, o)
xref = len(out)
out += "xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
for off in offs:
    out += "%010d 00000 n \n" % off
out += "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
with open(sys.argv[1], "w") as f:
    f.write(out)
