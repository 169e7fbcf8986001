"""Guest ABIs: how an event crosses into a sandbox and a response comes out."""

from .core import CoreLayout, decode_response, encode_request, inspect_module

__all__ = ["CoreLayout", "decode_response", "encode_request", "inspect_module"]
