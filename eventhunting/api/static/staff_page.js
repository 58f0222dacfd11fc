// What every staff page shares: the sign-in form, the account in the header, signing out.

(() => {
  "use strict";

  const { Session, t, locale } = window.EventHunting;

  // Shows the sign-in form until someone signs in, then calls `onSignedIn(session, account)`;
  // `refuse(account)` may return why this account cannot use the page (shown under the form).
  function startStaffPage({ onSignedIn, onSignedOut = () => {}, refuse = () => null }) {
    const session = new Session();
    const signIn = document.getElementById("sign-in");
    const form = document.getElementById("sign-in-form");
    const problem = document.getElementById("sign-in-error");
    const button = document.getElementById("sign-in-button");
    const accountBox = document.getElementById("account");

    const showSignIn = (message = "") => {
      accountBox.hidden = true;
      signIn.hidden = false;
      problem.textContent = message;
      document.body.dataset.signedIn = "false";
      onSignedOut();
    };

    const enter = (account) => {
      const refusal = refuse(account);
      if (refusal) {
        session.signOut();
        showSignIn(refusal);
        return;
      }
      signIn.hidden = true;
      problem.textContent = "";
      document.getElementById("account-email").textContent = account.email;
      accountBox.hidden = false;
      document.body.dataset.signedIn = "true";
      onSignedIn(session, account);
    };

    form.addEventListener("submit", async (submitted) => {
      submitted.preventDefault();
      const email = form.elements.email.value.trim();
      const password = form.elements.password.value;
      if (!email || !password) {
        problem.textContent = t("enter_email_and_password");
        return;
      }
      button.disabled = true;
      problem.textContent = "";
      try {
        const account = await session.signIn(email, password);
        form.elements.password.value = "";
        enter(account);
      } catch (error) {
        problem.textContent = error.status ? error.message : t("unreachable");
      } finally {
        button.disabled = false;
      }
    });

    document.getElementById("sign-out").addEventListener("click", async () => {
      await session.signOut();
      showSignIn();
    });

    // Signed in earlier in this tab (a reload): carry on if the tokens still work.
    if (session.signedIn) {
      session.account().then(enter, () => {
        session.forget();
        showSignIn();
      });
    } else {
      showSignIn();
    }
    return session;
  }

  // A time as people in Vietnam read it (every event is in Vietnam, UTC+7 all year).
  function vietnamTime(text, withDate = false) {
    const moment = new Date(text);
    if (Number.isNaN(moment.getTime())) {
      return String(text);
    }
    const zone = { timeZone: "Asia/Ho_Chi_Minh" };
    const time = moment.toLocaleTimeString(locale, { ...zone, hour12: false });
    return withDate
      ? t("time_on_date", { time, date: moment.toLocaleDateString(locale, zone) })
      : t("time_only", { time });
  }

  Object.assign(window.EventHunting, { startStaffPage, vietnamTime });
})();
