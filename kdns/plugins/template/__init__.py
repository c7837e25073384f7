"""The ``template`` plugin: answers built from a regex match (setup; template: the evaluator).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
