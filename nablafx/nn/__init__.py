"""Neural-network building blocks: conditioning (FiLM, TFiLM, TVFiLM), activations, causal layers."""
