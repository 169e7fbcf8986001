// The `workerd-js` peer: parse the JSON event, answer it back as JSON.
export default {
  async fetch(request) {
    return Response.json(await request.json());
  },
};
