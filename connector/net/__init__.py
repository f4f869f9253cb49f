"""Outbound networking shared by the agent and the AWS layer: proxies."""
