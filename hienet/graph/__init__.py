"""Structure → graph: neighbour lists and the shared tensor vocabulary."""
from . import keys
from .neighbors import Graph, build_graph, graph_of_atoms

__all__ = ["keys", "Graph", "build_graph", "graph_of_atoms"]
