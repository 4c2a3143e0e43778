// The chat widget: the Athena tutorial's ChatThing.ChatterWidget, on Orbiter.Widget.
globalThis.ChatThing = globalThis.ChatThing || {};

ChatThing.ChatterWidget = class ChatterWidget extends Orbiter.Widget {
  constructor(node) {
    super(node);
    this.chooseBox = this.nodeByAttribute("name", "chooseBox");
    this.scrollArea = this.nodeByAttribute("name", "scrollArea");
    this.sendLine = this.nodeByAttribute("name", "sendLine");
    this.usernameField = this.nodeByAttribute("name", "username");
    this.userMessage = this.nodeByAttribute("name", "userMessage");
    this.loggedInAs = this.nodeByAttribute("name", "loggedInAs");
    this.problem = this.nodeByAttribute("name", "problem");
    this.username = null;
    // The template's <athena:handler event="onsubmit" ...>:
    this.chooseBox.addEventListener("submit", (e) => this._handle(e, () => this.doSetUsername()));
    this.nodeByAttribute("name", "chatBox").addEventListener("submit", (e) =>
      this._handle(e, () => this.doSay()),
    );
  }

  _handle(event, action) {
    event.preventDefault();
    action().catch((err) => {
      this.problem.textContent = err.message;
    });
  }

  /** After a reconnect the server resumes our element; if it forgot it, log in again. */
  attached({ resumed }) {
    if (!resumed && this.username !== null) this.callRemote("setUsername", this.username);
  }

  async doSetUsername() {
    const username = this.usernameField.value;
    await this.callRemote("setUsername", username);
    this.username = username.trim();
    this.problem.textContent = "";
    this.chooseBox.style.display = "none";
    this.sendLine.style.display = "block";
    this.loggedInAs.appendChild(document.createTextNode(this.username));
    this.loggedInAs.style.display = "block";
  }

  async doSay() {
    const text = this.userMessage.value;
    this.userMessage.value = "";
    await this.callRemote("say", text);
  }

  displayMessage(message) {
    const newNode = document.createElement("div");
    newNode.appendChild(document.createTextNode(message));
    this.scrollArea.appendChild(newNode);
    document.body.scrollTop = document.body.scrollHeight;
  }

  displayUserMessage(avatarName, text) {
    this.displayMessage(avatarName + ": " + text);
  }
};
