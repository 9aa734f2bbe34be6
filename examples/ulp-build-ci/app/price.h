long price(long items);
