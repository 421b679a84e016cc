"""Memory-ordering litmus tests: herdtools7-format reader, candidate-execution enumeration, the
BPF memory model and the check of jit_core's compiled code against each architecture's model."""
