"""`python -m device_agent` is `edge-agent`."""

from device_agent.cli import main

if __name__ == "__main__":
    main()
