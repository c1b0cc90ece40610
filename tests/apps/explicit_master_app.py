"""An app that names its master in code: ``python explicit_master_app.py MASTER PATH`` counts PATH's lines."""
import sys

from gopark import Context

if __name__ == "__main__":
    with Context(sys.argv[1], quiet=True) as ctx:
        print(ctx.textFile(sys.argv[2]).count())
