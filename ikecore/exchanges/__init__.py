"""One module per IKEv2 exchange, each with its initiator and responder task (STYLE.md §5).

`base` holds the task interfaces and shared payload steps; `child` the Child SA steps shared by
IKE_AUTH and CREATE_CHILD_SA. See docs/ENGINE.md for how the session drives the tasks.
"""
