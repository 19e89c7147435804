"""Data: correlated inputs, reading and writing weight and synapse tables, bundled data sets."""
