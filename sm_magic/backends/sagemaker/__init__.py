"""The SageMaker backend (backend.py): submission through SDK v3's ModelTrainer (submit.py,
request.py, args.py, limits.py, sdk_recorder.py), AWS accounts and errors (aws_account.py,
errors.py), describe and CloudWatch logs with bounded polling (aws_polling.py, cloudwatch_logs.py,
cloudwatch_fanout.py), input and TensorBoard data in S3 (s3_inputs.py, s3_tensorboard.py), cost
(pricing.py) and warm pools (warm_pool.py).

Imports backends/base.py and the layers below backends/; never another backend.
"""
