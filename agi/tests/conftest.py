import sys
from pathlib import Path

# Test helpers (fake Asterisk, fake ARI) live next to the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
