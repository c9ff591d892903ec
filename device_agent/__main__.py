"""`python -m device_agent` is `edge-agent`."""

from device_agent.cli import main

main()
