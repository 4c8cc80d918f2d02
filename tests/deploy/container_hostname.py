"""Each emulated container's hostname, for Airflow's ``[core] hostname_callable``.

In Docker every container has its own hostname (``$HOSTNAME``), which Airflow records on each task
try. The deploy test runs the components as processes of one machine, so it gives each one the
``HOSTNAME`` its container would have and points Airflow here (an override of the test alone).
"""

import os


def hostname() -> str:
    """The component's container hostname."""
    return os.environ["HOSTNAME"]
