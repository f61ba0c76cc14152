"""Order-book features: the registry, the compiled kernel and its two drivers."""
from streamsig.features.spec import DEFAULT_FEATURES, FeatureSpec, default_features
from streamsig.features.state import FeatureState, FeatureTable, compute_features

__all__ = ["DEFAULT_FEATURES", "FeatureSpec", "default_features", "FeatureState", "FeatureTable", "compute_features"]
