"""The configs (`get_config()` files); installed as the package `scaling_jax.configs`."""
