// The PylonsChat tutorial's chat.js, verbatim; the seed's copy has its line breaks
// flattened, so the one break that JavaScript needs (before 'join =') is restored.
var ie_nocache = 1; create_xhr = function() { return window.ActiveXObject ? new ActiveXObject("Microsoft.XMLHTTP") : new XMLHttpRequest(); }
connect = function() { var name = document.getElementById('nickname').value; Orbited.connect(chat_event, name, "/orbited", "0"); join(name); }
join = function(user) { var xhr = create_xhr(); xhr.open("GET", "/chat/join/" + user, true); xhr.send(null); }
chat_event = function(data) { var chat_box = document.getElementById('box'); var div = window.parent.document.createElement('div'); div.className = "event"; div.innerHTML = data; chat_box.appendChild(div); chat_box.scrollTop = chat_box.scrollHeight; }
send_msg = function() { ie_nocache += 1; var xhr = create_xhr(); var msg = document.getElementById('chat').value; var name = document.getElementById('nickname').value; xhr.open("GET", "chat/msg/" + nickname + "/" + msg + "/" + ie_nocache); xhr.send(null); }
