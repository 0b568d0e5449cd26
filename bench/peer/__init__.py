"""Peers that tabletopic is benchmarked against, run from Maven Central jars in the same run."""
