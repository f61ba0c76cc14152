"""Order-book features: the registry, the compiled kernel and its two drivers."""
from streamsig.features.spec import FeatureSpec
from streamsig.features.state import FeatureState, FeatureTable, compute_features

__all__ = ["FeatureSpec", "FeatureState", "FeatureTable", "compute_features"]
