"""`python -m pha.health`: the same as `pha health`."""
from pha.health.cli import health

health(prog_name="pha health")
