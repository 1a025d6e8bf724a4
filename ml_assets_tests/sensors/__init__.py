"""What runs by itself: file sensors, automation, the retraining sensor, the daemon."""
