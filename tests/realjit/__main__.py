import sys

from realjit import main

sys.exit(main(sys.argv))
