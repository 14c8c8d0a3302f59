"""Entry script of the frozen binary: does what pip's `shuqiao` console script does
(`app:main`), so the binary and `pip install` behave the same. PyInstaller needs a
script file, not an entry-point spec, hence this file."""
import sys

from app import main

if __name__ == "__main__":
    sys.exit(main())
