"""Kept so that ``python setup.py`` and old pip versions work; metadata lives in pyproject.toml."""

from setuptools import setup

setup()
