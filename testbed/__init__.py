"""Real peers and checks shared by the tests and the benchmarks (neither imports the other).

``peers`` (the agent as a process, SIPp, an RTP caller), ``sip_probe`` (raw-UDP SIP),
``recording`` (a local realtime server that keeps its traffic), ``oracle`` (events checked
against the ``openai`` models), ``voice`` (spoken test phrases), and ``sipp/`` (scenarios).
"""
