"""What runs where training runs (this machine or a container): job.json -> mmengine Runner."""
