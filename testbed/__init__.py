"""Real peers and checks shared by the tests and the benchmarks (neither imports the other).

``peers`` (the agent as a process, SIPp, an RTP caller), ``sip_probe`` (raw-UDP SIP),
``recording`` (a local server that keeps its traffic), ``scripted`` (a local backend that
follows the shipped script without speech models), ``oracle`` (events checked
against the ``openai`` models), ``voice`` (spoken test phrases), and ``sipp/`` (scenarios).
"""
