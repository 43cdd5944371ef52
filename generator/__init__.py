"""gen-hls: config, IR, planner and emitters for the Vitis HLS project and Verilog units."""
