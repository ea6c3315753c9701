"""`edgeagent deploy`: safe SSH deploys of the agent to one device or a fleet (workstation side).

cli.add_arguments / cli.run are the command; rollout runs hosts in batches; host_deploy does one
host; remote_helper is the part that runs on the device (Python 3.6, standard library only).
"""
