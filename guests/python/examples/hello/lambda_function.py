import json


def lambda_handler(event, context):
    print(f"Received event: {json.dumps(event)}")
    print(f"Time remaining (ms): {context.get_remaining_time_in_millis()}")
    message = "Hello from Serverless!"
    return {'statusCode': 200, 'body': json.dumps({'message': message})}
