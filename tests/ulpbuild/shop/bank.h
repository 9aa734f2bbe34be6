extern int rate;
int deposit(int account, int amount);
int audit(void);
const char *status(void);
