"""How events flow: the Faust app, topics, agents, sessionization, publishing and the CLI."""
