import sys

from harness.realjit import main

sys.exit(main(sys.argv))
