"""cocotb testbenches and their runner."""
