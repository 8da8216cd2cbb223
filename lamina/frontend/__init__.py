"""The user-facing layer: Tensor, dtypes, devices, eager op dispatch, tracing."""

from lamina.frontend import methods as _methods  # noqa: F401 - binds Tensor methods
