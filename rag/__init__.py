"""Retrieval core: settings, encoders, Qdrant stores and page search."""

from rag import torchvision_compat

torchvision_compat.install()
