import sys

from suqiu.cli import main

sys.exit(main())
