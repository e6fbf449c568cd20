"""Test doubles that ship with the package so end-to-end tests on the appliance can use them."""
