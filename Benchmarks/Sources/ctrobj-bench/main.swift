print("ctrobj-bench: not written yet")
