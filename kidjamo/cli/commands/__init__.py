"""Sub-commands of ``kidjamo``: every module here that defines ``command`` (a click command) is one."""
