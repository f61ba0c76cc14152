"""``python -m streamsig.cli``."""
from streamsig.cli.main import main

main()
