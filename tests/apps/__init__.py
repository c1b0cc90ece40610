"""Small app modules the tests import (found by name on workers) or run as scripts."""
