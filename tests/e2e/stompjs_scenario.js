// The @stomp/stompjs scenario that tests/e2e/test_stompjs_node.py runs in node and
// tests/browser/test_stomp_browser.py runs in Chromium: one expression, a function of
// {Client, wsUrl, httpUrl, topic, queue} that resolves to what the client saw (with
// sockjsUrl, the client runs over sockjs-client's SockJS instead of a WebSocket).
async ({Client, wsUrl, sockjsUrl, httpUrl, topic, queue}) => {
  const waitFor = async (cond, what) => {
    const start = Date.now();
    while (!cond()) {
      if (Date.now() - start > 15000) throw new Error("timed out waiting for " + what);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const log = {errors: []};
  const client = new Client({
    ...(sockjsUrl ? {webSocketFactory: () => new SockJS(sockjsUrl)} : {brokerURL: wsUrl}),
    reconnectDelay: 0,
    heartbeatIncoming: 500,
    heartbeatOutgoing: 500,
  });
  const connected = new Promise((resolve, reject) => {
    client.onConnect = resolve;
    client.onStompError = (frame) => log.errors.push(frame.headers.message + ": " + frame.body);
    client.onWebSocketError = () => reject(new Error("websocket error"));
    client.onWebSocketClose = (event) => { log.closed = event.code; };
  });
  client.activate();
  const frame = await connected;
  log.version = frame.headers.version;
  log.heartBeat = frame.headers["heart-beat"];
  log.subprotocol = sockjsUrl ? "sockjs" : client.webSocket.protocol;

  const topicMessages = [];
  const queueMessages = [];
  client.subscribe(topic, (m) => topicMessages.push({
    body: m.body, type: m.headers["content-type"], offset: m.headers["orbiter-offset"],
  }));
  client.subscribe(queue, (m) => {
    queueMessages.push({body: m.body, redelivered: m.headers.redelivered || null});
    if (m.body === "nack me" && !m.headers.redelivered) m.nack(); else m.ack();
  }, {ack: "client-individual"});
  const receipt = new Promise((resolve) => client.watchForReceipt("sent", resolve));
  client.publish({destination: queue, body: "first", headers: {receipt: "sent"}});
  await receipt;

  client.publish({
    destination: topic, body: JSON.stringify({from: "stompjs"}),
    headers: {"content-type": "application/json"},
  });
  await waitFor(() => topicMessages.length >= 1, "the STOMP publication");
  const response = await fetch(httpUrl + "/api/publish", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({channel: topic.slice("/topic/".length), data: "from http"}),
  });
  log.httpStatus = response.status;
  client.publish({destination: queue, body: "nack me"});
  const tx = client.begin();
  client.publish({destination: queue, body: "in tx", headers: {transaction: tx.id}});
  tx.commit();
  await waitFor(() => topicMessages.length >= 2 && queueMessages.length >= 4, "messages");
  // Heart-beats both ways keep an idle connection open.
  await new Promise((r) => setTimeout(r, 1500));
  log.connectedAfterIdle = client.connected;
  log.topic = topicMessages;
  log.queue = queueMessages;
  await client.deactivate();
  return log;
}
